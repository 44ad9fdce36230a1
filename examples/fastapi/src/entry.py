"""FastAPI on Taipan: pydantic models, validation errors, sync and async
endpoints, dependencies, HTTPException, and the worker's env."""

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field
from workers import WorkerEntrypoint

app = FastAPI(title="Taipan items")


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    tags: list[str] = []


class Quote(BaseModel):
    item: Item
    quantity: int
    total: float


ITEMS = {1: Item(name="teapot", price=18.5, tags=["kitchen"])}


def pagination(limit: Annotated[int, Query(ge=1, le=100)] = 10, offset: int = 0) -> dict:
    # A sync dependency: FastAPI runs it "in a thread" (in place on Taipan).
    return {"limit": limit, "offset": offset}


@app.get("/")
async def root(request: Request):
    env = request.scope["env"]
    return {"message": env.MESSAGE}


@app.get("/items")
def list_items(page: Annotated[dict, Depends(pagination)]):
    # A sync endpoint, as most FastAPI code is written.
    items = list(ITEMS.items())[page["offset"] : page["offset"] + page["limit"]]
    return {"items": [{"id": i, **item.model_dump()} for i, item in items], "page": page}


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> Item:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return ITEMS[item_id]


@app.post("/items", status_code=201)
async def create_item(item: Item) -> dict:
    item_id = max(ITEMS) + 1
    ITEMS[item_id] = item
    return {"id": item_id, **item.model_dump()}


@app.post("/quote")
def quote(item: Item, quantity: Annotated[int, Query(gt=0)] = 1) -> Quote:
    return Quote(item=item, quantity=quantity, total=round(item.price * quantity, 2))


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        import asgi

        return await asgi.fetch(app, request, self.env)
