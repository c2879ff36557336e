"""tubai benchmark: runs models over datasets and marks each run's energy window."""
