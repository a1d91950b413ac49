"""01_getting_started: the tutorial apps."""

from modal_examples.example import Example

CASES: list[Example] = []
