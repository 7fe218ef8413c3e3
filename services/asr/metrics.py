"""The ``dojo_asr_*`` metrics of the speech-to-text endpoint (the route in the ingress, the ASRModel replicas)."""

from services.common.metrics import define

REQUESTS = define("dojo_asr_requests", "counter", "Speech-to-text requests by decoder and HTTP status",
                  ("decoder", "status"))
LATENCY = define("dojo_asr_request_latency_ms", "histogram", "Speech-to-text request latency in the ingress",
                 ("decoder",), boundaries=(5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000), unit="ms")
AUDIO_SECONDS = define("dojo_asr_audio_seconds", "counter", "Seconds of audio transcribed", ("decoder",), unit="s")
RTF = define("dojo_asr_rtf", "histogram", "Real-time factor per request: model replica compute time / audio time",
             ("decoder",), boundaries=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0))
ERRORS = define("dojo_asr_errors", "counter", "Rejected speech-to-text requests by reason", ("reason",))
BATCH_SIZE = define("dojo_asr_batch_size", "histogram", "Utterances per batched forward pass in an ASRModel replica",
                    ("deployment",), boundaries=(1, 2, 4, 8, 16, 32))
ALL = [REQUESTS, LATENCY, AUDIO_SECONDS, RTF, ERRORS, BATCH_SIZE]
