"""The shared workload as a Flower 1.42 app: a ClientApp around fl.client's trainer, FedAvg.

Runs only in the benchmark venv (.venv-bench), where flwr[simulation] is installed.  The client
function is a module-level function so Ray workers import it by reference; each worker builds the
prepared workload once (from the JSON the server sends in the train config) and caches it.

Timing: `Strategy.start` calls `evaluate_fn` before round 1 and after every round, right after
the aggregate replaced the global model.  The instants it is entered are therefore the instants
each new global model exists; consecutive differences, minus the evaluation itself, are round
times, the same definition the fedchain side uses (new model visible -> next model visible).
"""

import json
import time

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from bench.stats import Recorder
from bench.workload import Prepared, Workload, prepare

_CACHE: dict[str, Prepared] = {}


def _prepared(workload_json: str) -> Prepared:
    found = _CACHE.get(workload_json)
    if found is None:
        found = prepare(Workload.from_dict(json.loads(workload_json)))
        _CACHE[workload_json] = found
    return found


def train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    prepared = _prepared(str(config["workload"]))
    client = int(context.node_config["partition-id"])
    round_number = int(config["server-round"]) - 1  # Flower counts from 1, the chain from 0
    (weights,) = msg.content["arrays"].to_numpy_ndarrays()
    trained = prepared.local_train(client, round_number, weights.astype(np.float64))
    reply = RecordDict(
        {
            "arrays": ArrayRecord([trained]),
            "metrics": MetricRecord({"num-examples": prepared.samples(client)}),
        }
    )
    return Message(content=reply, reply_to=msg)


def client_app() -> ClientApp:
    app = ClientApp()
    app.train()(train)
    return app


def server_app(prepared: Prepared, recorder: Recorder) -> ServerApp:
    workload = prepared.workload
    workload_json = json.dumps(workload.as_dict(), sort_keys=True)
    app = ServerApp()

    def evaluate(_round: int, arrays: ArrayRecord) -> MetricRecord:
        recorder.model_at_s.append(time.perf_counter())
        (weights,) = arrays.to_numpy_ndarrays()
        acc = prepared.accuracy(weights.astype(np.float64))
        recorder.accuracy.append(acc)
        recorder.eval_done_s.append(time.perf_counter())
        return MetricRecord({"accuracy": acc})

    @app.main()  # type: ignore[untyped-decorator]  # flwr is untyped in the main venv
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=workload.clients,
            min_available_nodes=workload.clients,
        )
        strategy.start(
            grid,
            ArrayRecord([prepared.initial]),
            num_rounds=workload.rounds,
            train_config=ConfigRecord({"workload": workload_json}),
            evaluate_fn=evaluate,
        )

    return app
