from sb3_reinforce.zoo import main

main()
