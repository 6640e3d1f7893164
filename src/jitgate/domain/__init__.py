"""Pure domain: value objects, durations and the request/grant state machine. No I/O."""
