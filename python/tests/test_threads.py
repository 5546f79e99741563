"""Two threads share one Session: each computes what it computes alone (the GIL is released
while the runtime runs, so both run at once)."""

import threading

import numpy as np

from conftest import golden_files


def test_two_threads_share_one_session(sessions):
    session = sessions("rope")
    (_, [(long_tokens, _)]), (_, [(short_tokens, _)]) = list(golden_files("rope"))[:2]
    alone = {"long": session.logits(long_tokens), "short": session.logits(short_tokens)}
    generated = list(session.generate([65, 66, 67], 10))
    results, errors = {}, []

    def work(key, tokens):
        try:
            for i in range(5):
                results[(key, i)] = session.logits(tokens)
            results[(key, "gen")] = list(session.generate([65, 66, 67], 10))
        except Exception as e:  # reported below, a thread's exception is otherwise lost
            errors.append(e)

    threads = [
        threading.Thread(target=work, args=("long", long_tokens)),
        threading.Thread(target=work, args=("short", short_tokens)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for key in ["long", "short"]:
        for i in range(5):
            np.testing.assert_array_equal(results[(key, i)], alone[key])
        assert results[(key, "gen")] == generated
