"""What the benchmark's studies share: where things live (paths), the tiers they time
(tiers), running a job in a fresh process (jobs), the models' functions they score with
(scoring), writing their results (results) and the parser every study starts from (cli).
The studies reach models/ only through this package or the public commands."""
