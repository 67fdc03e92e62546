"""gunicorn settings read from the project folder (`gunicorn 'app:create_app()'` finds this file).

Command-line flags still win. Why these values:
- timeout: a sync worker is killed after `timeout` seconds on one request. The return URL may wait
  for Amazon twice (Get + Complete, each with bounded retries: about 17 s at worst) plus up to
  15 s for a concurrent request's claim, so 30 s (gunicorn's default) could kill a worker while
  money is moving. The claim's 90 s lease stays longer than this.
- control_socket_disable: gunicorn 27 otherwise shares one control socket per user
  (~/.gunicorn/gunicorn.ctl) between every instance on the machine.
"""

timeout = 75
control_socket_disable = True
