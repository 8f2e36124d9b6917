"""The agentid workers, one package each, plus `runner` to run one, several or all of them."""
