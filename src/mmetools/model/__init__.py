"""The model folder and what it says of itself: layout, configs, validation, fixture cases, the
in-process reference run, weights through DVC, and the scaffold. Imports only core."""
