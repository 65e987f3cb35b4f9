"""What a run is: its parameters, flags, scenario files and certificates."""
