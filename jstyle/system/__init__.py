"""The machine a run lives on: files written atomically, memory, signals, progress."""
