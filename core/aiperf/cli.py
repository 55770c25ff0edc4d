def main(argv=None) -> int:
    raise SystemExit("aiperf: the CLI is being built")
