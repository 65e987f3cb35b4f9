"""The library builds: where the adapters and user builds are, and how to load them."""
