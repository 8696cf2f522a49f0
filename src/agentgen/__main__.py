from agentgen.cli import main

main()
