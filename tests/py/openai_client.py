"""The official `openai` client against the nemoclaw gateway: a chat completion, a streamed
chat completion and an embedding. Reads OPENAI_BASE_URL / OPENAI_API_KEY like any agent would;
prints one JSON object with what it got; exits non-zero on any failure."""
import json
import sys

import openai

model = sys.argv[1] if len(sys.argv) > 1 else "m-1"
client = openai.OpenAI(max_retries=0, timeout=20)
out = {"openai_version": openai.__version__}

chat = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "hello from python"}]
)
out["chat"] = chat.choices[0].message.content
out["chat_usage"] = chat.usage.total_tokens if chat.usage else None

parts = []
stream = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "stream to python"}], stream=True
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
out["stream"] = "".join(parts)
out["stream_chunks"] = len(parts)

emb = client.embeddings.create(model=model, input="embed me")
out["embedding"] = emb.data[0].embedding

try:
    client.chat.completions.create(model="not-allowed", messages=[{"role": "user", "content": "x"}])
    out["forbidden"] = None
except openai.PermissionDeniedError as e:
    out["forbidden"] = e.status_code

print(json.dumps(out))
