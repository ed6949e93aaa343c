"""On-chain governance: proposals with a deposit, stake-weighted votes, execution at the end
height on every node (pure, integers only)."""
