"""Files that :func:`pipelines.export_triton.export_model` copies into a Triton model repository.

``model.py`` here runs inside Triton's Python backend stub, not in radwatch processes. It is a
package only so that the template ships in the wheel and is type-checked with the rest of the
code; nothing in radwatch imports it.
"""
