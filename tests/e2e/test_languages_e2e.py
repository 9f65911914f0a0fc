"""Languages through the Discord fake: a member whose Discord speaks Indonesian sees /animate in
Indonesian from the published command to the delivered result (answers, the card's embed and
buttons, its progress edits, the result and its buttons, a refusal); the published commands
carry Indonesian and Spanish names and descriptions; the mod log speaks the server's language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.i18n import LOCALE_DIR
from bot.jobs import JobState
from testkit.e2e_world import world
from testkit.images import picture

pytestmark = pytest.mark.timeout(240)


def catalogue(lang: str) -> dict[str, str]:
    """msgid -> msgstr of the shipped catalogue (messages only, singular forms)."""
    from babel.messages.pofile import read_po

    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "bot.po", "rb") as f:
        return {
            (m.id[0] if isinstance(m.id, tuple) else m.id): (
                m.string[0] if isinstance(m.string, tuple) else m.string
            )
            for m in read_po(f)
            if m.id and m.context is None
        }


def texts(event: Any) -> list[str]:
    """Every text a member reads in a message: its content, embeds (title, description, field
    names and values, footer) and button labels."""
    shown = [event.content] if event.content else []
    for embed in event.embeds:
        shown += [embed.get("title") or "", embed.get("description") or ""]
        for field in embed.get("fields", []):
            shown += [field["name"], field["value"]]
        shown.append((embed.get("footer") or {}).get("text") or "")
    shown += [c["label"] for row in event.components for c in row["components"] if c.get("label")]
    return [t for t in shown if t]


# English texts a card or result shows whole (a label, a field name, a state): none may appear.
# ("Remix" and "Info" are Indonesian too: the catalogue keeps them.)
ENGLISH = {
    "Cancel", "Animate again", "State", "Asked by", "Started", "Why", "Continue", "Report", "Delete",
    "⏳ Queued", "📤 Submitting", "🎬 Rendering", "✅ Done, sending…", "✅ Delivered",
}  # fmt: skip


async def test_an_indonesian_member_sees_animate_in_indonesian_end_to_end(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        code, out = await w.bot.run_command("sync", "--guild", str(w.guild.id))
        assert code == 0, out
        published = {c["name"]: c for c in w.fake.commands(guild=w.guild)}
        animate = published["animate"]
        assert animate["name_localizations"]["id"] == "animasikan"
        assert animate["name_localizations"]["es-ES"] == "animar"
        assert animate["description_localizations"]["id"] == "Ubah gambar diam menjadi video pendek"
        assert animate["description_localizations"]["es-ES"] == "Anima una imagen fija en un vídeo corto"
        options = {o["name"]: o for o in animate["options"]}
        assert options["duration"]["name_localizations"]["id"] == "durasi"
        motion = {c["name"]: c for c in options["motion"]["choices"]}
        assert motion["medium"]["name_localizations"]["es-ES"] == "medio"

        id_words = catalogue("id")
        budi = w.fake.add_user("budi", locale="id")
        w.fake.add_member(w.guild, budi)
        it = await w.animate(budi, version="gen-2")
        await it.wait_acknowledged(timeout=3)
        mention = f"<@{budi.id}>"
        result = await w.fake.wait_for(
            lambda e: e.kind == "create" and mention in (e.content or "") and bool(e.attachments), timeout=60
        )
        (job,) = await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.DELIVERED)
        assert job.locale == "id"
        # The card's last redraw (delivered) follows the job's row, and may follow the result.
        await w.fake.wait_for(
            lambda e: e.id == it.original_message_id and "✅ Terkirim" in str(e.embeds), timeout=15
        )

        card_versions = [e for e in w.fake.events if e.id == it.original_message_id and e.embeds]
        assert len(card_versions) >= 2  # shown, then edited as it moved on (progress and delivery)
        seen = [t for e in [*card_versions, result] for t in texts(e)]
        assert not [t for t in seen if t in ENGLISH]
        first, last = card_versions[0], card_versions[-1]
        assert first.embeds[0]["title"] == f"Animasi {job.id}"
        assert [f["name"] for f in first.embeds[0]["fields"]] == ["Status", "Diminta oleh", "Dimulai"]
        assert "gerakan medium · gen-2" in first.embeds[0]["description"]
        assert "kredit · tugas" in first.embeds[0]["description"]
        assert (
            texts(first)[-2:]
            == [id_words["Cancel"], id_words["Animate again"]]
            == ["Batalkan", "Animasikan lagi"]
        )
        states = [f["value"] for e in card_versions for f in e.embeds[0]["fields"] if f["name"] == "Status"]
        assert states[0].startswith(id_words["⏳ Queued"])
        assert states[-1].startswith("✅ Terkirim · balasan interaksi: video")
        assert last.embeds[0]["fields"][0]["value"] == states[-1]
        assert not [s for s in states if "elapsed" in s or "in the queue" in s]
        # The result: the message and its buttons.
        assert result.content.startswith(f"{mention} animasi Anda sudah jadi!")
        assert "your animation" not in result.content
        labels = texts(result)[1:]
        assert labels == ["Animasikan lagi", "Remix", "Lanjutkan", "Info", "Laporkan", "Hapus"]
        # The Info button, for the same member: in Indonesian too.
        info = await w.fake.click_button(result.message, f"result:info:{job.id}", user=budi)
        (answer,) = await info.wait_for_messages(n=1, timeout=15)
        assert answer.content.startswith(f"**Animasi `{job.id}`** · selesai")
        assert "Menunggu di antrean" in answer.content and "Diterima dengan paket Pro" in answer.content

        # A refusal: a picture too small to animate, privately, in Indonesian (numbers included).
        small = await w.animate(budi, image=picture(40, 40))
        await small.wait_acknowledged(timeout=3)
        refusal = await w.fake.wait_for(lambda e: e.interaction_id == small.id and e.ephemeral, timeout=15)
        assert refusal.content == (
            "⚠️ Tidak bisa menganimasikan itu: gambar berukuran 40x40; setiap sisi minimal 64 px"
        )
        # Alice's Discord is in English: her answer is the English one.
        english = await w.animate(w.alice, image=picture(40, 40))
        await english.wait_acknowledged(timeout=3)
        answer = await w.fake.wait_for(lambda e: e.interaction_id == english.id and e.ephemeral, timeout=15)
        assert answer.content == "⚠️ Can't animate that: the image is 40x40; each side must be at least 64 px"


async def test_the_mod_log_speaks_the_servers_language_not_the_moderators(tmp_path: Path) -> None:
    async with world(tmp_path, fake={"locale": "es-ES"}) as w:  # the server (and its people) in Spanish
        modlog = w.fake.add_text_channel(w.guild, "registro")

        async def run(name: str, **options: Any) -> Any:  # the moderator's own Discord in Indonesian
            it = await w.fake.invoke_slash(
                name, user=w.mod, guild=w.guild, channel=w.channel, options=options, locale="id"
            )
            (answer,) = await it.wait_for_messages(n=1, timeout=15)
            return answer

        await run("modlog channel", channel=modlog)
        await run("quota block", member=w.bob, reason="spam")
        post = await w.fake.wait_for(
            lambda e: e.channel_id == modlog.id and bool(e.embeds) and "bloqueado" in e.embeds[0]["title"],
            timeout=15,
        )
        embed = post.embeds[0]
        assert embed["title"] == "Miembro bloqueado"
        assert {f["name"]: f["value"] for f in embed["fields"]} == {
            "Por": f"<@{w.mod.id}>", "Sobre": f"<@{w.bob.id}>", "Detalle": "spam",
        }  # fmt: skip
        first = next(e for e in w.fake.events if e.channel_id == modlog.id and e.embeds)
        assert first.embeds[0]["title"] == "Canal del registro de moderación"
        # The blocked member's own refusal follows his locale (Spanish here, as his Discord).
        refused = await w.animate(w.bob)
        await refused.wait_acknowledged(timeout=3)
        answer = await w.fake.wait_for(lambda e: e.interaction_id == refused.id and e.ephemeral, timeout=15)
        assert answer.content == "⛔ Un moderador te ha bloqueado el uso de /animate aquí: spam."
