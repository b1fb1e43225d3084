"""What the benchmark's studies share: where things live (paths), SST-2 and the jobs' inputs
(data), the tiers they train, load and time (tiers), running a job in a fresh process (jobs)
and its peak memory (memory), running calibrate and answering its label requests
(calibrate_runs), cascade configs and routing statistics (configs), the models' functions
they score and replay with (scoring), the guarantee they measure (guarantees), bare-loop
timing (timing), writing their results (results) and the parser every study starts from (cli).
The studies reach models/ only through this package or the public commands."""
