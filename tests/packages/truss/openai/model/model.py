"""Like truss's test_openai: the OpenAI-shaped methods beside predict."""


class Model:
    def predict(self, model_input):
        return {"echo": model_input}

    def chat_completions(self, model_input):
        last = model_input["messages"][-1]["content"]
        return {"id": "chatcmpl-1", "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": last[::-1]}}]}

    def completions(self, model_input):
        return {"id": "cmpl-1", "object": "text_completion",
                "choices": [{"index": 0, "text": model_input["prompt"].upper()}]}
