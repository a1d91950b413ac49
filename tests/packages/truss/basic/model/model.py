"""Like truss's test_basic_truss: __init__ takes everything (**kwargs), load() once."""


class Model:
    def __init__(self, **kwargs):
        self._config = kwargs["config"]
        self._model = None

    def load(self):
        self._model = lambda x: x * 2

    def predict(self, model_input):
        return {"predictions": [self._model(x) for x in model_input["inputs"]],
                "name": self._config["model_name"]}
