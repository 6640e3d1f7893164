"""The ceiling for HTTP benchmarks: a FastAPI endpoint that does nothing, on the same uvicorn."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/noop")
async def noop() -> dict[str, str]:
    return {"ok": "yes"}
