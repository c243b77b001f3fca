"""Reading datasets: a folder of labelled images becomes a seeded, stratified split of examples."""
