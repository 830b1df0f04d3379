"""tunecheck: does this task need fine-tuning, or will long-context prompting (or a newer base) do?"""

__version__ = "0.1.0"
