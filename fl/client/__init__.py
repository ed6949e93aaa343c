"""The FL client: trains in float on a participant's machine and submits signed integer deltas.

This subpackage may do I/O (files, sockets through a transport); nothing here feeds the app
hash except the bytes it signs, which the state machine validates like any other input.
"""
