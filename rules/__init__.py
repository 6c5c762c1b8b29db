"""The rules engine: AWS IoT SQL rules that route device messages to actions."""
