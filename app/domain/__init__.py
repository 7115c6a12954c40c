"""Plain types and errors; nothing here imports FastAPI, SQLAlchemy or pydantic."""
