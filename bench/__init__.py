"""fastgd's benchmark suite (not collected by the normal test run)."""
