"""The `gatescan` command (cli.py, one module per command in commands/, the options they share in
options.py) and `gatescan.testing`, what tests, benchmarks and the demo share."""
