"""Like truss's test_truss_with_error: predict raises."""


class Model:
    def predict(self, model_input):
        if model_input.get("fail"):
            raise ValueError("the model could not handle this input")
        return {"ok": True}
