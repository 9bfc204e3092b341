"""Runs inside the bench-only venv that has the `siwe` package (abnf<2.4): times
parse + verify of the messages in argv[1] and prints microseconds per message as JSON."""

import json
import sys
import time
from datetime import datetime

from siwe import SiweMessage

cases = json.load(open(sys.argv[1], encoding="utf-8"))
moment = datetime.fromisoformat(cases["time"])
rounds = int(sys.argv[2])
best = float("inf")
for _ in range(rounds):
    started = time.perf_counter()
    for case in cases["messages"]:
        message = SiweMessage.from_message(message=case["message"], abnf=True)
        message.verify(case["signature"], timestamp=moment)
    best = min(best, time.perf_counter() - started)
print(json.dumps({"us_per_message": best / len(cases["messages"]) * 1e6}))
