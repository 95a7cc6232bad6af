"""The admin's program-file pages (docs/program-files.md): "Download configuration" (YAML) and
"Upload configuration" (the diff of a dry run, then a confirm button that loads the same text)
on the program's change page. Both need "change program"; a confirmed load is written to the
admin log of the program."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from loyalty.models import Program

from .export import DocumentUnreadable, dumps, export_document, loads
from .loading import DocumentInvalid, LoadResult, load_document
from .spec import BY_NAME

MAX_BYTES = 5 * 1024 * 1024


class UploadForm(forms.Form):
    file = forms.FileField(
        required=False, label="Program file", help_text="YAML or JSON, as written by Download configuration."
    )
    text = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict:
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            if upload.size > MAX_BYTES:
                raise forms.ValidationError("The file is larger than 5 MB.")
            try:
                data["text"] = upload.read().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise forms.ValidationError("The file is not UTF-8 text.") from exc
        if not data.get("text"):
            raise forms.ValidationError("Choose a program file.")
        return data


def _program(request: HttpRequest, program_id: int) -> Program:
    if not request.user.has_perm("loyalty.change_program"):
        raise PermissionDenied
    return get_object_or_404(Program, pk=program_id)


def download(request: HttpRequest, program_id: int) -> HttpResponse:
    program = _program(request, program_id)
    response = HttpResponse(dumps(export_document(program)), content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{program.slug}.yaml"'
    return response


def _grouped(result: LoadResult) -> list[tuple[str, list]]:
    """The changes per section, under the section's title ("Earning rules")."""
    sections: dict[str, list] = {}
    for change in result.changes:
        sections.setdefault(BY_NAME[change.section].title, []).append(change)
    return list(sections.items())


def upload(request: HttpRequest, program_id: int) -> HttpResponse:
    """GET: the form. POST with a file: the dry run's diff (or the problems). POST "confirm":
    the load of the text the diff was made from."""
    program = _program(request, program_id)
    form = UploadForm(request.POST or None, request.FILES or None)
    context = {
        **admin.site.each_context(request),
        "opts": Program._meta,
        "title": f"Upload configuration of {program}",
        "original": program,
        "form": form,
        "program_url": reverse("admin:loyalty_program_change", args=[program.pk]),
    }
    if request.method == "POST" and form.is_valid():
        text = form.cleaned_data["text"]
        confirm = "confirm" in request.POST
        try:
            result = load_document(loads(text), slug=program.slug, dry_run=not confirm)
        except DocumentUnreadable as exc:
            context["problems"] = [str(exc)]
        except DocumentInvalid as exc:
            context["problems"] = [str(p) for p in exc.problems]
        else:
            if confirm:
                lines = result.report()
                if lines:
                    model_admin = admin.site._registry[Program]
                    model_admin.log_change(
                        request, program, f"Loaded a program file: {len(lines)} change(s). " + "; ".join(lines)[:1500]
                    )
                    messages.success(request, f"Configuration loaded: {len(lines)} change(s).")
                else:
                    messages.info(request, "The configuration already matched the file: nothing changed.")
                return HttpResponseRedirect(context["program_url"])
            context.update(result=result, sections=_grouped(result), text=text)
    return TemplateResponse(request, "admin/programfiles/upload.html", context)
