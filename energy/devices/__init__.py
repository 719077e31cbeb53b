"""Device credentials and signatures: who is sending, and whether the body is theirs."""
