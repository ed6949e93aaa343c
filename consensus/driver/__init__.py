"""The one consensus driver: the sans-IO loop around the engine that the daemon and the
simulator both run (WAL record choice, group commit, replay, relay, the future buffer, compact
proposal bookkeeping).  I/O lives behind the narrow ports of `consensus.driver.ports`."""
