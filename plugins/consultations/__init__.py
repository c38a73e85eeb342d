"""Consultations that close the loop: questions, answers, a summary, and the council's reply."""
