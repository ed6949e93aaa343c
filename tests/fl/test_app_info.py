"""The app's typed status (AppInfo) agrees with its round query: the node reads the former."""

import numpy as np

from consensus.codec import decode
from tests.fl.helpers import key, new_app, random_delta, run_block, update_tx


def test_info_names_the_open_round_and_its_pending_updates() -> None:
    app = new_app()  # 3 updates close a round
    rng = np.random.default_rng(1)
    assert (app.info().work_round, app.info().work_pending) == (0, 0)
    run_block(app, [update_tx(app, key(i), random_delta(rng)) for i in range(2)])
    info = app.info()
    round_answer = decode(app.query("round", b"").value)
    assert isinstance(round_answer, list)
    assert (info.work_round, info.work_pending) == (round_answer[0], round_answer[4]) == (0, 2)
    run_block(app, [update_tx(app, key(2), random_delta(rng))])
    assert (app.info().work_round, app.info().work_pending) == (1, 0)
    assert app.info().last_height == 2
