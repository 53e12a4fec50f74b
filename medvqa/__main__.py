from medvqa.run import main

main()
