"""The API process's view of the tiers' dispatch windows (``domain.jobs.submission.WindowRooms``), made once
per app, as a dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from domain.jobs.submission import WindowRooms


async def get_window_rooms(request: Request) -> WindowRooms:
    state = request.app.state
    rooms: WindowRooms | None = getattr(state, "window_rooms", None)
    if rooms is None:
        rooms = WindowRooms()
        state.window_rooms = rooms
    return rooms


WindowRoomsDep = Annotated[WindowRooms, Depends(get_window_rooms)]
