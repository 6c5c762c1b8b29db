"""Benchmark harness: thingcore against a private Mosquitto, side by side, on loopback.

Run it with `make bench` or `python -m bench --help`; see bench/README.md.
"""
