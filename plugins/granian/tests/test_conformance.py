"""The Granian backend passes the conformance kit, as a third-party plugin would run it."""

from launcher.testing.conformance import BackendConformance


class TestConformance(BackendConformance):
    backend = "granian"
    # Granian's Rust side accepts connections in its own threads: a worker whose Python loop is
    # blocked still takes some, and they are lost when TIMEOUT kills it (see the README).
    blocked_worker_still_accepts = True
    # Granian's parser frames a request with both Content-Length and Transfer-Encoding as chunked,
    # drops its Content-Length before the app sees it and closes the connection after the answer:
    # never smuggled, but not answered 400 either (see the README).
    rejects_content_length_with_transfer_encoding = False
    # A request line longer than Granian's read buffer for the head (at least 72 KiB, 827 KB with
    # the default limits) is answered 431: the buffer is full before the line ends.
    long_request_lines_are_414 = False
