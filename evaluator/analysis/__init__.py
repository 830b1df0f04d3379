"""Analysis of per-item results: estimates, intervals, paired differences, power, selection of operating points,
the crossover, baselines and the verdict. Pure: numbers in, numbers out (no torch, no model code, no files)."""
