"""The fault soak: ``python -m soak [redis nats kafka sqs]`` (``nox -s soak -- ...``).

Per durable mode, messages are published concurrently (each publish awaited, so "published" means the
broker acknowledged it) while the broker is killed with SIGKILL and started again twice, a consumer
process is SIGKILLed and started again twice, and 1 % of the messages are poison (the handler raises
for them, so they must end in the dead letters). At the end every published message must have been
handled or dead-lettered: the soak prints what was published, handled, lost, handled twice and
dead-lettered, and the consumer's resident memory, and exits non-zero on any loss, on dead letters
that do not match the poison, or on memory that keeps growing.

It starts every broker it uses on a free loopback port and never touches a shared one. Modules, one
concept each: :mod:`.modes` (what differs per broker), :mod:`.brokers` (the processes),
:mod:`.consumer` (the consumer program), :mod:`.ledger` (who got what), :mod:`.publisher`,
:mod:`.faults` (the kill plan), :mod:`.run` (one mode, start to verdict), :mod:`.report`.
"""
