"""``stt serve``: speech-to-text as a private local service (the ``[serve]`` extra).

The rooms, in the order a request passes through them:

* :mod:`stt.serve.config`: the settings (``conf/serve.yaml``), checked before anything loads;
* :mod:`stt.serve.main`: loads the models once and runs uvicorn and the Wyoming server;
* :mod:`stt.serve.http`: the FastAPI app: OpenAI-compatible ``/v1/audio/transcriptions``,
  ``/v1/models``, ``/health``, the ``/v1/stream`` WebSocket and the web page;
* :mod:`stt.serve.uploads`: multipart bodies parsed as they arrive, bounded, into a private folder;
* :mod:`stt.serve.live`: one live stream's conversation (PCM in, partial/final JSON out);
* :mod:`stt.serve.wyoming`: Home Assistant's Wyoming protocol (ASR);
* :mod:`stt.serve.engine`: the bounded thread pools every endpoint shares;
* ``static/``: the web page (plain HTML/JS, no build step, nothing from a CDN).
"""
