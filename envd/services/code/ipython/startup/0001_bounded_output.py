# envd: stdout/stderr in bounded messages (envd/services/code/flow.py). ipykernel sends whatever a cell wrote
# during the last 200 ms as ONE message, so a tight print loop makes messages of hundreds of MB that no reader
# can bound. Flushing once 1 MiB is pending (flush waits for the IOPub thread to send) keeps each message small
# and makes a flooding cell wait for its output to leave, like a program writing to a pipe.
def _e2b_bound_stream_messages():
    from ipykernel.iostream import OutStream

    limit = 1 << 20
    write = OutStream.write

    def bounded_write(self, string):
        written = write(self, string)
        pending = getattr(self, "_envd_pending", 0) + len(string)
        if pending > limit:
            pending = 0
            self.flush()
        self._envd_pending = pending
        return written

    OutStream.write = bounded_write


_e2b_bound_stream_messages()
del _e2b_bound_stream_messages
