from entitle.cli import main

main()
