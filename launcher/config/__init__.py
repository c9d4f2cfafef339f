"""Settings in, one ``Config`` out: the env contract declared once (``settings``), resolved
purely (``resolve``) into the frozen ``Config`` every backend gets (``model``), with the
machine's CPU and memory budget (``resources``) and one parser of listen addresses
(``addresses``). Nothing here starts a process or imports the app."""
