"""`python -m creditdash.cli`, as the tests and some deployments start the gateway."""

from creditdash.cli import main

main()
