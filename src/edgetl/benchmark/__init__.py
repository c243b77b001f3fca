"""Speed, size and accuracy of every format of a run, measured the same way."""
