from django.urls import path

from chatsite import views

urlpatterns = [
    path("", views.page),
    path("chat/events", views.chat_events),
    path("chat/cancel", views.chat_cancel),
]
