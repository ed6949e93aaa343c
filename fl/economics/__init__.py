"""Accounts, token, staking, client and validator incentives (pure, integers only).

The state lives in `EconState` (state.py); transactions and block hooks are plain functions
that check everything first and mutate only once nothing can fail, so a rejected transaction
leaves the state exactly as it was.
"""
