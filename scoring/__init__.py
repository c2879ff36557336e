"""tubai scoring: energy of windows, scores per run, rankings and reports."""
