"""OpenAI wire objects, shared by the server and the run engine.

Both layers build the JSON OpenAI's clients expect from stored objects here,
so neither reaches into the other: ``wire.objects`` holds assistants,
threads, messages, conversations, items and list envelopes; ``wire.runs``
runs, run steps and their stream deltas; ``wire.encoding`` writes them as JSON
text, ``wire.sse`` frames streams. Nothing here imports the server or
the runner.
"""
