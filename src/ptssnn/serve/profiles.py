"""Speaker profiles kept by the HTTP service: one JSON file per profile in one folder.

Profile ids are chosen by the client or generated; an id is 1-64 characters of
``[A-Za-z0-9_-]`` (no dots, no slashes), and the file's resolved path is checked to sit in
the folder, so an id can never name a path outside it. The folder holds at most
``max_profiles`` profiles; each update is a read-modify-write under a per-store lock and an
atomic rename, so concurrent requests cannot tear a file.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, UploadFile

from ptssnn.errors import PtssnnError
from ptssnn.features.profile import ProfileError, SpeakerProfile

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_MAX_PROFILES = 1000


class ProfileStoreError(PtssnnError):
    """A profile request the store refuses; ``code`` and ``status`` say how to answer it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ProfileStore:
    """Profiles on disk under ``root``, for one recogniser.

    Args:
        root: The folder (created if missing).
        max_profiles: Most profiles the folder may hold.
        check: Called with every profile read or written (the recogniser's compatibility
            check: a profile of another model is refused).
    """

    def __init__(self, root: str | Path, *, max_profiles: int = DEFAULT_MAX_PROFILES,
                 check: Callable[[SpeakerProfile], Any] | None = None) -> None:
        if max_profiles < 1:
            raise PtssnnError(f"max_profiles must be >= 1, got {max_profiles}")
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PtssnnError(f"{root}: cannot create the profile folder ({error})") from error
        self.max_profiles = max_profiles
        self.check = check
        self.lock = threading.Lock()

    def path(self, profile_id: str) -> Path:
        """The file of a profile id.

        Raises:
            ProfileStoreError: An id that is not 1-64 of ``[A-Za-z0-9_-]`` (422).
        """
        if not isinstance(profile_id, str) or not _ID.fullmatch(profile_id):
            raise ProfileStoreError(
                422, "invalid_profile_id",
                "a profile id is 1-64 characters of letters, digits, '_' and '-'")
        path = (self.root / f"{profile_id}.json").resolve()
        if path.parent != self.root.resolve():  # belt and braces: the pattern allows no '/'
            raise ProfileStoreError(422, "invalid_profile_id", "invalid profile id")
        return path

    def count(self) -> int:
        return sum(1 for _ in self.root.glob("*.json"))

    def new_id(self) -> str:
        return secrets.token_hex(8)

    def get(self, profile_id: str) -> SpeakerProfile:
        """Read a profile.

        Raises:
            ProfileStoreError: Unknown id (404), a damaged file or one made for another
                model (409).
        """
        path = self.path(profile_id)
        if not path.is_file():
            raise ProfileStoreError(404, "profile_not_found", f"no profile {profile_id!r}")
        try:
            profile = SpeakerProfile.load(path)
            if self.check is not None:
                self.check(profile)
        except ProfileError as error:
            raise ProfileStoreError(409, "profile_mismatch",
                                    f"profile {profile_id!r}: {_tail(error)}") from error
        return profile

    def create(self, profile: SpeakerProfile, profile_id: str | None = None) -> str:
        """Store a new profile (under ``profile_id`` or a fresh one).

        Raises:
            ProfileStoreError: Id taken (409) or the folder is full (507).
        """
        with self.lock:
            profile_id = self.new_id() if profile_id is None else profile_id
            path = self.path(profile_id)
            if path.exists():
                raise ProfileStoreError(409, "profile_exists",
                                        f"profile {profile_id!r} exists; update or delete it")
            if self.count() >= self.max_profiles:
                raise ProfileStoreError(507, "profile_store_full",
                                        f"the service holds its limit of {self.max_profiles} "
                                        "profiles; delete some first")
            profile.save(path)
        return profile_id

    def update(self, profile_id: str, change: Callable[[SpeakerProfile], SpeakerProfile]
               ) -> SpeakerProfile:
        """Read, change and write back one profile, atomically with respect to other calls.

        Raises:
            ProfileStoreError: As :meth:`get`.
        """
        with self.lock:
            profile = change(self.get(profile_id))
            profile.save(self.path(profile_id))
        return profile

    def delete(self, profile_id: str) -> None:
        """Remove a profile.

        Raises:
            ProfileStoreError: Unknown id (404).
        """
        with self.lock:
            path = self.path(profile_id)
            if not path.is_file():
                raise ProfileStoreError(404, "profile_not_found", f"no profile {profile_id!r}")
            path.unlink()


def describe(profile_id: str, profile: SpeakerProfile) -> dict[str, Any]:
    """What the service tells about a profile (never its moments)."""
    return {"id": profile_id, "name": profile.name, "clips": profile.clips,
            "frames": profile.frames, "pipeline": profile.pipeline}


def _tail(error: Exception) -> str:
    """An error message without the server's file path in front."""
    text = str(error)
    return text.split(": ", 1)[1] if text.startswith("/") and ": " in text else text


#: Most audio files one enrolment request may carry.
DEFAULT_MAX_ENROL_FILES = 50


def profile_router(
    store: ProfileStore,
    new_profile: Callable[[str], SpeakerProfile],
    enrol_uploads: Callable[[list[Any], SpeakerProfile], None],
    *,
    max_files: int = DEFAULT_MAX_ENROL_FILES,
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> APIRouter:
    """The ``/profiles`` endpoints (a FastAPI router).

    Args:
        store: Where profiles live.
        new_profile: ``name -> empty profile`` of the served model.
        enrol_uploads: Adds uploaded files to a profile; raises the service's audio errors
            (the same as ``/predict``) for a bad file, so nothing is stored then.
        max_files: Most files per request.
        responses: OpenAPI error descriptions.
    """
    router = APIRouter()
    documented = responses or {}

    def checked(files: list[UploadFile]) -> list[UploadFile]:
        if len(files) > max_files:
            raise ProfileStoreError(413, "too_many_files",
                                    f"{len(files)} files; at most {max_files} per request")
        return files

    @router.post("/profiles", status_code=201, summary="Enrol a speaker from uploaded clips",
                 responses=documented)  # type: ignore[arg-type]
    def create(
        files: list[UploadFile] = File(  # noqa: B008 (FastAPI's way to declare a form field)
            ..., description="Unlabelled audio of one speaker (field repeated per file)"),
        profile_id: str | None = Form(None, alias="id",
                                      description="Id to store it under (default: a new one)"),
        name: str = Form("", max_length=200),
    ) -> dict[str, Any]:
        if profile_id is not None:
            store.path(profile_id)  # a bad id fails before any audio is decoded
        profile = new_profile(name)
        enrol_uploads(checked(files), profile)
        created = store.create(profile, profile_id)
        return describe(created, profile)

    @router.post("/profiles/{profile_id}/clips", summary="Add clips to a speaker profile",
                 responses=documented)  # type: ignore[arg-type]
    def add(
        profile_id: str,
        files: list[UploadFile] = File(..., description="More audio of the speaker"),  # noqa: B008
    ) -> dict[str, Any]:
        store.get(profile_id)  # 404 / 409 before any audio is decoded
        fresh = new_profile("")
        enrol_uploads(checked(files), fresh)
        # The merge is cheap; the backbone ran outside the store's lock.
        return describe(profile_id, store.update(profile_id, lambda p: p.merge(fresh)))

    @router.get("/profiles/{profile_id}", summary="What a profile holds (counts only)",
                responses=documented)  # type: ignore[arg-type]
    def show(profile_id: str) -> dict[str, Any]:
        return describe(profile_id, store.get(profile_id))

    @router.delete("/profiles/{profile_id}", summary="Delete a profile",
                   responses=documented)  # type: ignore[arg-type]
    def delete(profile_id: str) -> dict[str, Any]:
        store.delete(profile_id)
        return {"deleted": profile_id}

    return router
